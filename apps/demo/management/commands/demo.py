"""``manage.py demo [--no-wargame] [--ab-rate R]``: the whole pipeline on bundled data
(apps/demo/services.py says what it builds)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.demo.services import run_demo


class Command(BaseCommand):
    help = ("Load the demo: bundled advisories, two demo git repositories, their scans and "
            "patches, real wargames, a model trained on their verdicts and an A/B report.")

    def add_arguments(self, parser):
        parser.add_argument("--no-wargame", action="store_true",
                            help="stop after the first project's patches (no wargames, no "
                                 "model): fast, and installs nothing")
        parser.add_argument("--wargame", action="store_true",
                            help="(the default; kept for older scripts)")
        parser.add_argument("--ab-rate", type=float, default=1.0,
                            help="share of ML-routed demo patches the A/B experiment also "
                                 "wargames (default 1.0, so the small demo's report is "
                                 "not empty; production's default is AB_TEST_RATE)")

    def handle(self, *args, no_wargame: bool = False, ab_rate: float = 1.0, **options):
        if not 0 < ab_rate <= 1:
            raise CommandError("--ab-rate must be in (0, 1]")
        def say(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # progress shows as it happens, also through a pipe

        seconds = run_demo(say=say, wargame=not no_wargame, ab_rate=ab_rate)
        if not no_wargame:
            self.stdout.write(f"demo finished in {seconds:.0f} s")
        self.stdout.write(self.style.SUCCESS("the review queue is at /admin/reviews/apv/"))
