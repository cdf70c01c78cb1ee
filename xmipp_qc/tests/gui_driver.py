"""Drive Scipion's Tk windows in the GUI tests: display, clicks, new windows, screenshots.

The GUI tests need an X display: ``make test`` starts Xvfb
(``scripts/services/xvfb.sh``) and exports DISPLAY, which the test environment
keeps in ``XMIPP_QC_DISPLAY`` (see :mod:`xmipp_qc.headless`) so that protocol
subprocesses never see it. Without a display the tests skip, under CI (``CI``
set) they fail. Screenshots go to ``$XMIPP_QC_SCREENSHOTS`` (default: a
temporary folder, printed).
"""

import os
import subprocess
import tempfile
import time
import tkinter as tk
import warnings

import pytest

_SHOTS = None


def testDisplay():
    """The X display of the GUI tests (see the module docstring), or None."""
    return os.environ.get("XMIPP_QC_DISPLAY") or os.environ.get("DISPLAY")


def requireDisplay():
    """Skip (fail under CI) when the test display is missing or cannot be opened."""
    display = testDisplay()
    why = None
    if not display:
        why = "no X display (run `make test`, which starts Xvfb, or set DISPLAY)"
    else:
        try:
            tk.Tk(screenName=display).destroy()
        except tk.TclError as exc:
            why = f"cannot open display {display}: {exc}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"GUI tests need a display under CI: {why}")
        pytest.skip(why)


def screenshotFolder():
    global _SHOTS
    if _SHOTS is None:
        _SHOTS = os.environ.get("XMIPP_QC_SCREENSHOTS") or tempfile.mkdtemp(
            prefix="xmipp-qc-screens-")
        os.makedirs(_SHOTS, exist_ok=True)
        # a warning: pytest lists it in its summary, output of passing tests is captured
        warnings.warn(f"GUI screenshots in {_SHOTS}", UserWarning, stacklevel=2)
    return _SHOTS


def pump(widget, seconds=0.3):
    """Let Tk process events (draw, map windows) for about ``seconds``."""
    end = time.time() + seconds
    while time.time() < end:
        widget.update()
        time.sleep(0.02)


def toplevels(root):
    """Every Tk toplevel below ``root`` (recursively), mapped or not."""
    found = []
    for child in root.winfo_children():
        if isinstance(child, tk.Toplevel):
            found.append(child)
        found.extend(toplevels(child))
    return found


def newWindows(tkRoot, before):
    """Toplevels of the Tk interpreter of ``tkRoot`` that are not in ``before``."""
    top = tkRoot._root()
    return [w for w in toplevels(top) if w not in before and w.winfo_exists()]


def eyeButton(formWindow, paramName):
    """The eye (visualize) button of a form parameter, as the user sees it."""
    from pyworkflow.utils import Message

    widget = formWindow.widgetDict[paramName]
    for button in widget.btnFrame.winfo_children():
        if isinstance(button, tk.Button) and button.cget("text") == Message.LABEL_BUTTON_VIS:
            return button
    raise AssertionError(f"no eye button for {paramName}")


def click(button, settle=0.5):
    """Click a Tk button as a user would (``invoke``) and let the windows appear."""
    button.invoke()
    pump(button, settle)


def screenshot(toplevel, name):
    """Save a PNG of a mapped toplevel (ImageMagick ``import``); return its path.

    The window is raised first: Xvfb keeps no pixels of covered windows.
    """
    toplevel.lift()
    pump(toplevel, 0.4)
    path = os.path.join(screenshotFolder(), f"{name}.png")
    wid = toplevel.winfo_id()
    frame = toplevel.wm_frame()
    target = frame if frame and int(frame, 16) else hex(wid)
    subprocess.run(["import", "-window", str(target), path], check=True,
                   env=dict(os.environ), timeout=60)
    assert os.path.getsize(path) > 1000, path
    return path


def catchTkErrors(widget):
    """Collect exceptions raised in Tk callbacks (Tk only prints them) into a list."""
    errors = []
    root = widget._root()

    def report(exc, value, tb):
        errors.append(value.with_traceback(tb))

    root.report_callback_exception = report
    return errors


def raiseFirst(errors):
    if errors:
        raise errors[0]


def analyzeResults(project, prot, drive, shotPrefix, settle=2.0):
    """Open Scipion's project window, select ``prot``, press "Analyze results".

    ``drive(viewer)`` runs inside the Tk main loop once the viewer's form is
    open; its return value is returned, its exceptions (and those of any Tk
    callback) are raised here after the windows are closed.
    """
    import matplotlib
    from pyworkflow.gui import gui
    from pyworkflow.gui.plotter import Plotter
    from pyworkflow.gui.project import ProjectWindow

    # one project window per process in Scipion; a test opens several, one after
    # another: pyworkflow's image cache would hold images of a destroyed Tk
    gui.image_cache.clear()
    os.environ["DISPLAY"] = testDisplay()  # for Tk only: protocols run headless
    backend = matplotlib.get_backend()  # the project window switches pyplot to TkAgg
    try:
        return _analyze(ProjectWindow(project.getPath()), prot, drive, shotPrefix, settle)
    finally:
        os.environ.pop("DISPLAY", None)
        Plotter.setBackend(backend)


def _analyze(window, prot, drive, shotPrefix, settle):
    errors, result = catchTkErrors(window.root), {}
    root = window.root
    opened = []

    def inForm():
        try:
            if not opened:
                raise AssertionError("'Analyze results' opened no viewer form")
            result.update(drive(opened[0]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            root.quit()  # leaves the form's main loop ...
            root.after(200, root.quit)  # ... then the project window's

    def analyze():
        try:
            view = window.getViewWidget()
            run = window.project.getProtocol(prot.getObjId())
            view._selection.clear()
            view._selection.append(run.getObjId())  # as a click on the run's box does
            view._updateSelection()
            view.drawRunsGraph()
            pump(root, settle)
            result["project"] = screenshot(root, f"{shotPrefix}_project_window")
            patchViewerCapture(opened)
            root.after(int(2 * settle * 1000), inForm)
            button = view.btnAnalyze  # a real click (X server) on "Analyze results"
            clickAt(button, button.winfo_width() // 2, button.winfo_height() // 2, 1)
        except BaseException as exc:
            errors.append(exc)
            root.quit()

    root.after(int(settle * 1000), analyze)
    window.show()
    for top in toplevels(root._root()):
        top.destroy()
    root._root().destroy()
    raiseFirst(errors)
    return result


def patchViewerCapture(opened):
    """Record every ProtocolViewer whose form opens (the test needs the instance)."""
    from pyworkflow.viewer import ProtocolViewer

    original = ProtocolViewer.visualize
    if getattr(original, "_qcPatched", False):
        ProtocolViewer._qcOpened = opened
        return
    ProtocolViewer._qcOpened = opened

    def visualize(self, obj, **kwargs):
        ProtocolViewer._qcOpened.append(self)
        return original(self, obj, **kwargs)

    visualize._qcPatched = True
    ProtocolViewer.visualize = visualize


def texts(widget):
    """Every text shown by the labels, messages and text boxes below ``widget``."""
    found = []
    for child in widget.winfo_children():
        try:
            if isinstance(child, tk.Text):
                found.append(child.get("1.0", "end"))
            elif "text" in child.keys():
                found.append(str(child.cget("text")))
        except tk.TclError:
            pass
        found.extend(texts(child))
    return found


def clickAt(widget, x, y, times=1):
    """Real clicks (xdotool, through the X server) at ``(x, y)`` of a widget; the
    events are handled when Tk next processes events."""
    widget.winfo_toplevel().lift()
    pump(widget, 0.3)
    rx, ry = widget.winfo_rootx() + x, widget.winfo_rooty() + y
    subprocess.run(["xdotool", "mousemove", "--sync", str(rx), str(ry), "click", "--repeat",
                    str(times), "--delay", "80", "1"], check=True, env=dict(os.environ),
                   timeout=30)


def doubleClick(widget, x, y):
    """A real double click at ``(x, y)`` of a widget, handled before returning."""
    clickAt(widget, x, y, 2)
    pump(widget, 1.0)
