from django import template
from django.contrib.admin.templatetags.admin_list import result_headers, result_hidden_fields
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.console.queue import rows_html

register = template.Library()


@register.inclusion_tag("admin/reviews/apv/queue_results.html")
def queue_result_list(cl):
    """Like the admin's ``result_list``, with the rows rendered in one pass."""
    headers = list(result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": list(result_hidden_fields(cl)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for h in headers if h["sortable"] and h["sorted"]),
        "rows_html": mark_safe(rows_html(  # noqa: S308 (every value escaped in rows_html)
            cl.result_list, now=timezone.now(),
            with_checkbox="action_checkbox" in cl.list_display)),
        "has_rows": bool(cl.result_count),
    }
