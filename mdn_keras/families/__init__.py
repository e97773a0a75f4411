"""Component families: one small module each, one registry.

`get_family(component)` turns what a user passes as `component=` (a name, a
family object, or a serialised family) into a `Family`.
"""

from __future__ import annotations

from typing import Any, Union

from mdn_keras.families.base import Family
from mdn_keras.families.laplace import Laplace
from mdn_keras.families.mvn_tril import MultivariateNormalTriL
from mdn_keras.families.normal import Normal
from mdn_keras.families.student_t import StudentT

#: The families by name.
FAMILIES: dict[str, type[Family]] = {
    cls.name: cls for cls in (Normal, Laplace, StudentT, MultivariateNormalTriL)
}

ComponentLike = Union[str, Family, dict]


def get_family(component: Any = "normal") -> Family:
    """The `Family` for `component`: a name in `FAMILIES`, a `Family`, or `{"name", **options}`.

    Raises:
        ValueError: for an unknown name or anything else.
    """
    if isinstance(component, Family):
        return component
    if isinstance(component, str) and component in FAMILIES:
        return FAMILIES[component]()
    if isinstance(component, dict) and component.get("name") in FAMILIES:
        options = {k: v for k, v in component.items() if k != "name"}
        return FAMILIES[component["name"]](**options)
    raise ValueError(
        f"Expected `component` to be one of {sorted(FAMILIES)}, a mdn_keras.families.Family, "
        f"or a serialised family {{'name': ..., **options}}. Received: component={component!r}"
    )


__all__ = [
    "FAMILIES",
    "Family",
    "Laplace",
    "MultivariateNormalTriL",
    "Normal",
    "StudentT",
    "get_family",
]
