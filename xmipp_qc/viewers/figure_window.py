"""A matplotlib figure in its own Scipion (Tk) window.

pyworkflow's :class:`~pyworkflow.gui.plotter.Plotter` shows figures through
pyplot (``plt.show``), which only knows the figures pyplot created; the pure
functions of :mod:`xmipp_qc.plots` build bare :class:`~matplotlib.figure.Figure`
objects, so a ``Plotter(figure=fig).show()`` opens nothing. Here the figure is
put on a Tk canvas (``FigureCanvasTkAgg``, with matplotlib's navigation toolbar
for zoom, pan and save) inside a pyworkflow :class:`~pyworkflow.gui.gui.Window`,
a child of the viewer's form when there is one.
"""

import tkinter as tk

from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg, NavigationToolbar2Tk
from pyworkflow.gui import gui
from pyworkflow.viewer import View


class QcWindow(gui.Window):
    """pyworkflow window that does not start a second Tk main loop inside Scipion.

    Inside Scipion (a master window given) the project window's main loop
    serves it; alone (no master) :meth:`show` runs the main loop until closed.
    The Tk toplevel keeps a reference to this object (``root.qcWindow``) so
    tests and tools can find the window's content from the widget tree.
    """

    def __init__(self, title, masterWindow=None, minsize=(420, 300)):
        super().__init__(title=title, masterWindow=masterWindow, minsize=minsize)
        self.root.qcWindow = self

    def show(self, center=True, modal=False):
        if self.master is None:
            return super().show(center=center, modal=modal)
        self.root.update_idletasks()
        width = min(self.root.winfo_reqwidth(), self.root.winfo_screenwidth() - 40)
        height = min(self.root.winfo_reqheight(), self.root.winfo_screenheight() - 80)
        x = max(0, (self.root.winfo_screenwidth() - width) // 2)
        y = max(0, (self.root.winfo_screenheight() - height) // 2)
        self.root.geometry(f"{width}x{height}+{x}+{y}")  # on the screen, whatever it holds
        self.root.deiconify()
        self.root.focus_set()

    def close(self, e=None):
        self.root.destroy()
        if self.master is None:
            self.root.quit()


class FigureWindow(QcWindow):
    """A window holding one figure, its canvas and a navigation toolbar."""

    def __init__(self, figure, title, masterWindow=None):
        super().__init__(title, masterWindow=masterWindow)
        self.figure = figure
        frame = tk.Frame(self.root)
        frame.grid(row=0, column=0, sticky="news")
        self.canvas = FigureCanvasTkAgg(figure, master=frame)
        self.toolbar = NavigationToolbar2Tk(self.canvas, frame, pack_toolbar=False)
        self.toolbar.update()
        self.toolbar.pack(side=tk.BOTTOM, fill=tk.X)
        self.canvas.get_tk_widget().pack(side=tk.TOP, fill=tk.BOTH, expand=True)
        self.canvas.draw()


class FigureView(View):
    """View of a figure: ``show()`` opens a :class:`FigureWindow`.

    Parameters
    ----------
    figure : matplotlib.figure.Figure
        Built by a pure function of :mod:`xmipp_qc.plots`.
    title : str
        Window title.
    masterWindow : pyworkflow.gui.gui.Window, optional
        The viewer's form (``viewer.getWindow()``); None opens a standalone window.
    """

    def __init__(self, figure, title="", masterWindow=None):
        self._figure = figure
        self._title = title
        self._master = masterWindow
        self.window = None

    def getFigure(self):
        return self._figure

    def show(self):
        self.window = FigureWindow(self._figure, self._title, masterWindow=self._master)
        self.window.show()
        return self.window
