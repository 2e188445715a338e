"""A1111's `modules.ui_components`: the small Gradio component classes extensions import."""

from __future__ import annotations

from typing import Any

import gradio as gr

from modules import ui_gradio3_compat  # noqa: F401 - extensions importing these classes get the Gradio 3 translation


class FormComponent:
    """Marker base A1111 uses for components that sit in a form row."""

    webui_do_not_create_gradio_pyi_thank_you = True

    def get_expected_parent(self) -> Any:
        return gr.components.Form


class ToolButton(gr.Button, FormComponent):
    """A small square button with an emoji (A1111's 🔄, 📂...)."""

    def get_block_name(self) -> str:
        return "button"

    def __init__(self, value: str = "", *args: Any, elem_classes: list[str] | None = None, **kwargs: Any) -> None:
        classes = ["tool", *(elem_classes or [])]
        kwargs.setdefault("scale", 0)
        kwargs.setdefault("min_width", 40)
        super().__init__(value, *args, elem_classes=classes, **kwargs)


class FormRow(gr.Row):
    """A row of form controls."""

    def get_block_name(self) -> str:
        return "row"


class FormColumn(gr.Column):
    """A column of form controls."""

    def get_block_name(self) -> str:
        return "column"


class FormGroup(gr.Group):
    """A group of form controls."""

    def get_block_name(self) -> str:
        return "group"


class FormHTML(gr.HTML):
    """HTML that sits in a form row."""

    def get_block_name(self) -> str:
        return "html"


class FormColorPicker(gr.ColorPicker):
    """A color picker that sits in a form row."""

    def get_block_name(self) -> str:
        return "colorpicker"


class ResizeHandleRow(gr.Row):
    """A1111's two-column row with a drag handle; here an ordinary row with the same class name."""

    def get_block_name(self) -> str:
        return "row"

    def __init__(self, **kwargs: Any) -> None:
        classes = ["resize-handle-row", *(kwargs.pop("elem_classes", None) or [])]
        super().__init__(elem_classes=classes, **kwargs)


class DropdownMulti(gr.Dropdown):
    """A multiselect dropdown."""

    def get_block_name(self) -> str:
        return "dropdown"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(multiselect=True, **kwargs)


class DropdownEditable(gr.Dropdown):
    """A dropdown that also accepts typed values."""

    def get_block_name(self) -> str:
        return "dropdown"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_custom_value=True, **kwargs)


class InputAccordion(gr.Checkbox):
    """An accordion that is also an input: its value (a checkbox) is True while it is open (A1111 semantics).

    Use as `with InputAccordion(False, label="My feature") as enabled:`; pass `enabled` as a script argument.
    """

    global_index = 0

    def __init__(self, value: bool = False, **kwargs: Any) -> None:
        self.accordion_id = kwargs.get("elem_id")
        if self.accordion_id is None:
            self.accordion_id = f"input-accordion-{InputAccordion.global_index}"
            InputAccordion.global_index += 1
        label = kwargs.pop("label", "")
        kwargs.pop("open", None)
        kwargs_checkbox = {**kwargs, "elem_id": f"{self.accordion_id}-checkbox", "visible": False}
        super().__init__(value, label=label, **kwargs_checkbox)
        self.accordion = gr.Accordion(label=label, open=bool(value), elem_id=self.accordion_id,
                                      elem_classes=["input-accordion"])
        self.accordion.expand(lambda: True, outputs=[self], api_visibility="private", queue=False)
        self.accordion.collapse(lambda: False, outputs=[self], api_visibility="private", queue=False)

    def extra(self) -> gr.Column:
        """A1111 puts a few controls into the accordion's header; here they go at the top of the body."""
        return gr.Column(elem_id=f"{self.accordion_id}-extra", min_width=0)

    def __enter__(self) -> InputAccordion:
        self.accordion.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.accordion.__exit__(*exc)

    def get_block_name(self) -> str:
        return "checkbox"
