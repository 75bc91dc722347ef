"""Every feature Leadscore computes: a stable name, a type, a family and the sentence a salesperson reads.

The catalogue is data, not code: `build.py` computes the values, the model reads the names and kinds, and
`model/reasons.py` renders the sentences. A feature's name never changes once released; retire it instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast

from leadscore.features.schema import EVENT_TYPES, PAGE_KINDS

Kind = Literal["numeric", "categorical"]

DAY_MS: Final = 86_400_000
WINDOWS: Final = (7, 30, 90)


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    name: str
    kind: Kind
    family: str
    text: str  # sentence with {value}; numeric values are formatted without trailing zeros
    zero_text: str | None = None  # used when the value is 0 (e.g. "No pricing page visits in 30 days")
    missing_text: str | None = None  # used when the value is missing
    percent: bool = False  # a rate in [0, 1] read as a percentage
    negative_text: str | None = None  # used for values below 0, with the value's magnitude
    # A value of 0 says nothing about the lead (a trend of 0: no change, usually no activity at all): it is
    # never a reason, whatever the model makes of it (`model.ranges`).
    quiet_at_zero: bool = False
    label: str = ""  # what the feature measures, for people (default: its name in words)
    # how a value beyond the training range reads: (above the largest, below the smallest) seen in training
    beyond: tuple[str, str] = (
        "more than any lead the model learned from",
        "less than any lead the model learned from",
    )

    def sentence(self, value: object) -> str:
        if value is None or (isinstance(value, float) and value != value):
            return self.missing_text or f"{self.name}: unknown"
        if self.zero_text is not None and isinstance(value, (int, float)) and value == 0:
            return self.zero_text
        text = self.text
        if self.negative_text is not None and isinstance(value, (int, float)) and value < 0:
            text, value = self.negative_text, -value
        return text.format(value=self._shown(value), plural="" if value == 1 else "s")

    def _shown(self, value: object) -> str:
        if self.percent:
            pct = cast(float, value) * 100  # a rate: a float in [0, 1] (a trend: in [-1, 1])
            return f"{pct:+.0f} %" if self.name.endswith("trend") else f"{pct:.0f} %"
        return _fmt(value)

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def beyond_range(self, value: object, low: float, high: float) -> str:
        """A value outside [low, high], the range seen in training, in words: "Lead is 545 days old: older
        than any lead the model learned from (1 to 509 days)"."""
        above = isinstance(value, (int, float)) and value > high
        unit = " days" if self.name.startswith(("days_since_", "lead_age_")) else ""
        return (
            f"{self.sentence(value)}: {self.beyond[0 if above else 1]} "
            f"({self._shown(float(low))} to {self._shown(float(high))}{unit})"
        )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:.0f}"
    return str(value).replace("_", " ")


# Channels: the event streams features count, one per event type (schema.EVENT_TYPES, in its order), with a
# web visit counted as "web_visit" and also as its page kind, right after it; the home page has no channel of
# its own (a visit there says nothing beyond "web_visit"). Last, the derived streams.
_PAGE_CHANNELS: Final = tuple(f"visit_{page}" for page in PAGE_KINDS if page != "home")
_AFTER_WEB: Final = EVENT_TYPES.index("web_visit") + 1
CHANNELS: Final = (
    *EVENT_TYPES[:_AFTER_WEB],
    *_PAGE_CHANNELS,
    *EVENT_TYPES[_AFTER_WEB:],
    "engagement",
    "high_intent",
)
# Which channels make up the derived streams.
ENGAGEMENT: Final = frozenset(
    {
        "email_opened",
        "email_clicked",
        "web_visit",
        "content_download",
        "webinar_registered",
        "webinar_attended",
        "form_submitted",
        "demo_requested",
    }
)
HIGH_INTENT: Final = frozenset({"demo_requested", "form_submitted", "webinar_attended", "visit_pricing"})

_NOUN: Final = {
    "email_sent": ("marketing email{plural}", "No marketing emails"),
    "email_opened": ("email open{plural}", "No email opens"),
    "email_clicked": ("email click{plural}", "No email clicks"),
    "web_visit": ("website visit{plural}", "No website visits"),
    "visit_pricing": ("pricing page visit{plural}", "No pricing page visits"),
    "visit_docs": ("documentation visit{plural}", "No documentation visits"),
    "visit_careers": ("careers page visit{plural}", "No careers page visits"),
    "content_download": ("content download{plural}", "No content downloads"),
    "webinar_registered": ("webinar registration{plural}", "No webinar registrations"),
    "form_submitted": ("form{plural} submitted", "No forms submitted"),
    "engagement": ("interaction{plural}", "No interactions"),
    "sales_call": ("sales call{plural}", "No sales calls"),
    "meeting": ("meeting{plural}", "No meetings"),
}
_WINDOWED: Final = (
    "email_sent",
    "email_opened",
    "email_clicked",
    "web_visit",
    "visit_pricing",
    "visit_docs",
    "visit_careers",
    "content_download",
    "form_submitted",
    "engagement",
)
_SINCE: Final = {
    "engagement": ("Last interaction {value} day{plural} ago", "No interaction yet"),
    "email_opened": ("Last opened an email {value} day{plural} ago", "Never opened an email"),
    "web_visit": ("Last visited the website {value} day{plural} ago", "Never visited the website"),
    "visit_pricing": ("Last viewed pricing {value} day{plural} ago", "Never viewed pricing"),
    "demo_requested": ("Requested a demo {value} day{plural} ago", "Has not requested a demo"),
    "form_submitted": ("Last submitted a form {value} day{plural} ago", "Has not submitted a form"),
    "high_intent": ("Last high-intent action {value} day{plural} ago", "No high-intent action yet"),
}


def _catalog() -> tuple[FeatureSpec, ...]:
    specs: list[FeatureSpec] = [
        FeatureSpec("source", "categorical", "profile", "Came from {value}", missing_text="Source unknown"),
        FeatureSpec(
            "industry", "categorical", "profile", "Industry: {value}", missing_text="Industry unknown"
        ),
        FeatureSpec(
            "company_size",
            "categorical",
            "profile",
            "Company size {value} employees",
            missing_text="Company size unknown",
        ),
        FeatureSpec("country", "categorical", "profile", "Based in {value}", missing_text="Country unknown"),
        FeatureSpec(
            "seniority", "categorical", "profile", "Seniority: {value}", missing_text="Seniority unknown"
        ),
        FeatureSpec(
            "email_type",
            "categorical",
            "profile",
            "Uses a {value} email address",
            missing_text="Email address unknown",
        ),
        FeatureSpec(
            "lead_age_days",
            "numeric",
            "age",
            "Lead is {value} day{plural} old",
            label="Lead age in days",
            beyond=(
                "older than any lead the model learned from",
                "newer than any lead the model learned from",
            ),
        ),
    ]
    for ch in _WINDOWED:
        noun, none = _NOUN[ch]
        family = "pressure" if ch == "email_sent" else "engagement"
        for w in WINDOWS:
            specs.append(
                FeatureSpec(
                    f"{ch}_{w}d",
                    "numeric",
                    family,
                    f"{{value}} {noun} in the last {w} days",
                    zero_text=f"{none} in the last {w} days",
                )
            )
    for ch, noun in (
        ("webinar_attended", "Attended {value} webinar{plural}"),
        ("demo_requested", "Requested a demo {value} time{plural}"),
        ("unsubscribed", "Unsubscribed from marketing email"),
        ("handed_to_sales", "Already handed to sales"),
        ("sales_call", "{value} sales call{plural} so far"),
        ("meeting", "{value} meeting{plural} so far"),
    ):
        zero = {
            "webinar_attended": "Has not attended a webinar",
            "demo_requested": "Has not requested a demo",
            "unsubscribed": "Still subscribed to marketing email",
            "handed_to_sales": "Not yet handed to sales",
            "sales_call": "No sales calls yet",
            "meeting": "No meetings yet",
        }[ch]
        family = "pressure" if ch == "unsubscribed" else "intent"
        specs.append(FeatureSpec(f"{ch}_total", "numeric", family, noun, zero_text=zero))
    for ch, (text, missing) in _SINCE.items():
        family = "intent" if ch in ("demo_requested", "form_submitted", "high_intent") else "engagement"
        specs.append(
            FeatureSpec(
                f"days_since_{ch}",
                "numeric",
                family,
                text,
                missing_text=missing,
                beyond=(
                    "longer ago than for any lead the model learned from",
                    "more recent than for any lead the model learned from",
                ),
            )
        )
    specs += [
        FeatureSpec(
            "open_rate_30d",
            "numeric",
            "engagement",
            "Opened {value} of emails sent in the last 30 days",
            missing_text="No emails sent in the last 30 days",
            percent=True,
        ),
        FeatureSpec(
            "click_rate_30d",
            "numeric",
            "engagement",
            "Clicked {value} of emails sent in the last 30 days",
            missing_text="No emails sent in the last 30 days",
            percent=True,
        ),
        FeatureSpec(
            "open_rate_trend",
            "numeric",
            "pressure",
            "Opens per email sent changed by {value} against the 60 days before",
            missing_text="Too few emails to see an open-rate trend",
            percent=True,
            quiet_at_zero=True,
            beyond=(
                "a bigger rise than any lead the model learned from",
                "a bigger fall than any lead the model learned from",
            ),
        ),
        # interactions a day in the last 7 days minus those a day in the 23 days before (features.build)
        FeatureSpec(
            "activity_trend",
            "numeric",
            "engagement",
            "{value} more interaction{plural} a day in the last 7 days than in the 23 days before",
            negative_text="{value} fewer interaction{plural} a day in the last 7 days than in the 23 days "
            "before",
            quiet_at_zero=True,
            beyond=(
                "a bigger rise than any lead the model learned from",
                "a bigger fall than any lead the model learned from",
            ),
        ),
    ]
    return tuple(specs)


FEATURES: Final = _catalog()
BY_NAME: Final = {f.name: f for f in FEATURES}
CATEGORICAL: Final = tuple(f.name for f in FEATURES if f.kind == "categorical")
