"""A1111's old name of `modules.infotext_utils`; both stay importable (extensions use either)."""

from __future__ import annotations

from modules.infotext_utils import *  # noqa: F403 - this module is the old name of that one
from modules.infotext_utils import (  # noqa: F401 - names A1111's old module had, not all in __all__
    add_paste_fields,
    infotext_to_setting_name_mapping,
    paste_fields,
    registered_param_bindings,
    reset,
    values_for_fields,
)
