"""Hypothesis example counts, selected by MDN_KERAS_HYPOTHESIS_PROFILE.

* `ci` (default): each property runs the count its test module sets (tens of
  examples), so the whole matrix stays quick.
* `deep`: every property runs `DEEP_EXAMPLES` examples per backend (and per
  parametrization), for a periodic or pre-release run.
"""

import os

PROFILES = ("ci", "deep")
#: Examples per property under the deep profile; MDN_KERAS_HYPOTHESIS_EXAMPLES
#: overrides it (for a capped run on a slow machine; record the count used).
DEEP_EXAMPLES = int(os.environ.get("MDN_KERAS_HYPOTHESIS_EXAMPLES", "10000"))
PROFILE = os.environ.get("MDN_KERAS_HYPOTHESIS_PROFILE", "ci").strip().lower() or "ci"
if PROFILE not in PROFILES:
    raise ValueError(
        f"Expected MDN_KERAS_HYPOTHESIS_PROFILE to be one of {PROFILES}. "
        f"Received: MDN_KERAS_HYPOTHESIS_PROFILE={PROFILE!r}"
    )


def example_count(ci_examples: int) -> int:
    """Examples per property: `ci_examples`, or `DEEP_EXAMPLES` under the deep profile."""
    return DEEP_EXAMPLES if PROFILE == "deep" else ci_examples
