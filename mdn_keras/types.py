"""Type aliases, so that no backend is imported for typing."""

from typing import Any, Optional, Tuple, Union

#: A tensor of the active Keras backend, a NumPy array, or anything `keras.ops` converts.
Tensor = Any
#: A static shape; entries may be None where unknown.
Shape = Tuple[Optional[int], ...]
#: What the random functions take as `seed`.
Seed = Union[int, None, Any]
