"""``manage.py corpus_report [--corpus FILE] [--json]``: what the wargame corpus teaches on
its own — per package PoC, the advisory's first fixed release against the first release the
exploit fails on, and every release where the two disagree (docs/ml.md)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.ml.corpus_report import corpus_lessons


class Command(BaseCommand):
    help = ("Compare the wargame corpus with the advisory data: where the 'fixed' version is "
            "not the first release the exploit fails on (incomplete fixes).")

    def add_arguments(self, parser):
        parser.add_argument("--corpus", metavar="FILE",
                            help="an exported corpus (default: the corpus runs stored here)")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, corpus, as_json, **options):
        from apps.wargaming.corpus import corpus_rows, read_corpus

        try:
            rows = read_corpus(corpus) if corpus else corpus_rows()
        except (OSError, ValueError) as exc:
            raise CommandError(f"the corpus could not be read: {exc}") from exc
        lessons = corpus_lessons(rows)
        if as_json:
            self.stdout.write(json.dumps(lessons, indent=2))
            return
        for lesson in lessons:
            verdicts = ", ".join(f"{k} {v}" for k, v in lesson["verdicts"].items())
            self.stdout.write(
                f"{lesson['package']} ({lesson['exploit']}, vulnerable {lesson['vulnerable']}): "
                f"advisory fixed {lesson['advisory_first_fixed'] or '—'}, exploit first fails "
                f"on {lesson['exploit_first_fails_on'] or '—'}; {verdicts}")
            for d in lesson["disagreements"]:
                self.stdout.write(f"    {d['release']}: advisory says {d['advisory']}, the "
                                  f"exploit {d['exploit']} ({d['fix_distance']})")
            if lesson["earlier_not_exploited"]:
                self.stdout.write("    not exploited on earlier releases: "
                                  + ", ".join(lesson["earlier_not_exploited"]))
