"""``manage.py ab_testing enable [--rate R] | disable | status [--json]``"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.ab_testing.selectors import accuracy_report
from apps.ab_testing.services import experiment_disable, experiment_enable
from apps.core.errors import ApplicationError


class Command(BaseCommand):
    help = "Enable, disable or show A/B testing of the model against wargaming."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["enable", "disable", "status"])
        parser.add_argument("--rate", type=float, default=None,
                            help=f"share of ML-routed patches also wargamed "
                                 f"(default AB_TEST_RATE = {settings.AB_TEST_RATE})")
        parser.add_argument("--json", dest="as_json", action="store_true")

    def handle(self, *args, action: str, rate: float | None, as_json: bool, **options):
        try:
            if action == "enable":
                experiment_enable(rate=settings.AB_TEST_RATE if rate is None else rate,
                                  via="command")
            elif action == "disable":
                experiment_disable(via="command")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        report = accuracy_report()
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, default=str))
            return
        status = report["experiment"]
        if status["enabled"]:
            exp = status["experiment"]
            self.stdout.write(f"A/B testing: enabled at rate {exp['rate']:.2f} since "
                              f"{exp['enabled_at']:%Y-%m-%d %H:%M} by {exp['enabled_by']}")
        else:
            self.stdout.write("A/B testing: disabled")
        model = status["active_model"]
        self.stdout.write("active model: " + (f"v{model['version']} ({model['algorithm']})"
                                              if model else "none (every patch is wargamed)"))
        cm = report["confusion_matrix"]
        if report["sample_size"]:
            low, high = report["accuracy_ci95"]
            self.stdout.write(
                f"results: {report['sample_size']} compared ({report['not_counted']} without "
                f"a label verdict); TP {cm['tp']} FP {cm['fp']} FN {cm['fn']} TN {cm['tn']}; "
                f"accuracy {report['accuracy']:.3f} (95 % CI {low:.3f}–{high:.3f})")
        else:
            self.stdout.write(f"results: none compared yet ({report['not_counted']} without "
                              "a label verdict)")
