"""Forms of the console's decision confirmations (one APV, or a bulk action)."""

from __future__ import annotations

from django import forms

from apps.decisions.models import DecisionType
from apps.decisions.services import MIN_JUSTIFICATION


class DecisionForm(forms.Form):
    justification = forms.CharField(
        min_length=MIN_JUSTIFICATION, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=f"Why? At least {MIN_JUSTIFICATION} characters; kept in the audit record.",
    )
    confidence = forms.FloatField(min_value=0, max_value=1, initial=1.0,
                                  help_text="How sure you are, from 0 to 1.")
    modifications = forms.CharField(required=False,
                                    widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
                                    help_text="What should change in the next revision.")
    expires_at = forms.DateTimeField(required=False, help_text="When the acceptance ends "
                                     "(YYYY-MM-DD HH:MM, UTC).")
    #: The revision the reviewer saw, and a token making a double submit one decision.
    patch_revision = forms.IntegerField(required=False, widget=forms.HiddenInput)
    idempotency_key = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args, decision: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.decision = decision
        if decision != DecisionType.MODIFY:
            del self.fields["modifications"]
        else:
            self.fields["modifications"].required = True
        if decision != DecisionType.ACCEPT_RISK:
            del self.fields["expires_at"]
        else:
            self.fields["expires_at"].required = True


class BulkDecisionForm(forms.Form):
    justification = forms.CharField(
        min_length=MIN_JUSTIFICATION, widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Recorded on each APV's own decision and audit record.",
    )
