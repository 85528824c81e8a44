"""The notebooks' interactive controls, built so that they work in every kernel.

A control redraws by *replacing a widget's value*: a figure becomes PNG bytes in an
``ipywidgets.Image``, a cycle becomes WAV bytes in an ``ipywidgets.Audio``. Nothing is captured
through an ``ipywidgets.Output`` widget (``interact`` uses one), for two reasons:

* a kernel without a live frontend (papermill, nbval, nbclient) emulates the Output widget by
  sending ``comm_msg`` updates on the shell socket while it awaits the cell's ``execute_reply``
  on that same socket; now and then the reply is never noticed and the run hangs for good
  (seen in one papermill run in three of notebook 01 before this module existed);
* a callback that returns a figure under the inline backend draws it twice.

Every callback is a named function (in :mod:`cyclelib.viz.data`, :mod:`cyclelib.viz.spectrogram`,
:mod:`cyclelib.viz.model`) taking the control values as keyword arguments; the widgets here only
wire controls to it, so the tests call the same function over each control's options.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Audio


def figure_png(fig: plt.Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes; the figure is closed, so no backend draws it again."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def wav_bytes(wave: np.ndarray, sample_rate: int) -> bytes:
    """A mono waveform as 16-bit WAV bytes, peak-normalised (``IPython.display.Audio``)."""
    return Audio(np.asarray(wave, dtype=np.float64), rate=sample_rate).data


def control_values(controls: Mapping[str, Any]) -> dict[str, Any]:
    """The current value of each control, by keyword."""
    return {name: control.value for name, control in controls.items()}


def figure_explorer(draw: Callable[..., plt.Figure], controls: Mapping[str, Any]):
    """Controls above an image that ``draw(**values)`` redraws whenever a control changes.

    Returns an ``ipywidgets.VBox`` (controls, then the image); the first figure is drawn now.
    """
    import ipywidgets as widgets

    image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))

    def redraw(change: dict | None = None) -> None:
        image.value = figure_png(draw(**control_values(controls)))

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*controls.values(), image])


def audio_player(play: Callable[..., tuple[str, bytes]], controls: Mapping[str, Any]):
    """Controls above a title and an audio player; ``play(**values)`` gives (title, WAV bytes).

    Returns an ``ipywidgets.VBox``; the first sound is loaded now (not played: no autoplay).
    """
    import ipywidgets as widgets

    title = widgets.HTML()
    audio = widgets.Audio(format="wav", autoplay=False, loop=False)

    def reload(change: dict | None = None) -> None:
        title.value, audio.value = play(**control_values(controls))

    for control in controls.values():
        control.observe(reload, names="value")
    reload()
    return widgets.VBox([*controls.values(), title, audio])


def dropdown(description: str, options: Sequence[Any], value: Any | None = None):
    """A labelled drop-down over ``options`` (the first one selected unless ``value``)."""
    import ipywidgets as widgets

    return widgets.Dropdown(description=description, options=list(options),
                            value=options[0] if value is None else value)


def slider(description: str, options: Sequence[Any], value: Any):
    """A labelled slider that offers exactly ``options`` (ints, floats or strings)."""
    import ipywidgets as widgets

    return widgets.SelectionSlider(description=description, options=list(options), value=value,
                                   continuous_update=False)
