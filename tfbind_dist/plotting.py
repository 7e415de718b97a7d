"""Where the package's figures come from: the user's pyplot, or detached figures for files.

No module of the package chooses a matplotlib backend. A plot function given `ax` draws on it;
given none, it makes a figure through pyplot, so a notebook shows it inline and a script shows it
with `plt.show()`. Figures that commands write to files are `detached`: matplotlib `Figure`s made
without pyplot, which never open a window or appear in a notebook, whatever the backend, and
need no `plt.close`.
"""
from __future__ import annotations


def user_axes(ax=None, figsize: tuple[float, float] = (7.0, 4.0)):
    """`ax`, or the axes of a new pyplot figure of `figsize`."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained").add_subplot()


def user_subplots(nrows: int, ncols: int, figsize: tuple[float, float], **kwargs):
    """(figure, 2-D array of axes) of a new pyplot figure."""
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained", **kwargs)


def detached(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kwargs):
    """(figure, 2-D array of axes) of a figure outside pyplot, for writing to a file (`storage.save_figure`)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots(nrows, ncols, squeeze=False, **kwargs)
