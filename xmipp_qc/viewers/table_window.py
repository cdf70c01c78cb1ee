"""A table of items with a picture per row, in a Scipion (Tk) window.

Works with only pyworkflow installed (no Java, no xmipp3): a ttk tree view with
the row's picture (e.g. image | reprojection | residual) in the first column,
one column per value, sortable by clicking a heading, shown page by page.
Rows can be selected (click, shift-click, ctrl-click; the selection is kept
across pages) and handed to the window's action buttons, e.g. "Subset from the
selected rows". Pictures are made only for the rows of the page on display.
"""

import math
import tkinter as tk
import tkinter.ttk as ttk

from PIL import Image, ImageTk
from pyworkflow.gui import widgets

from xmipp_qc.viewers.figure_window import QcWindow


class Column:
    """A value column: ``key`` of the row dicts, heading ``label``, display format."""

    def __init__(self, key, label, fmt="{:.3g}", width=90, anchor="e"):
        self.key, self.label, self.fmt, self.width = key, label, fmt, width
        self.anchor = anchor

    def text(self, value):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        try:
            return self.fmt.format(value)
        except (ValueError, TypeError):
            return str(value)


def _sortKey(key, descending):
    """Sort key putting missing values (None, NaN) last in either direction."""
    def k(row):
        v = row.get(key)
        missing = v is None or (isinstance(v, float) and not math.isfinite(v))
        if missing:
            return (1, 0)
        if isinstance(v, str):
            return (0, v)
        return (0, -v if descending else v)
    return k


class TableWindow(QcWindow):
    """Rows (dicts with an ``id``) with a picture each, sortable and selectable.

    Parameters
    ----------
    title : str
        Window title.
    rows : list of dict
        One dict per item; ``row["id"]`` identifies it.
    columns : list of Column
    picture : callable, optional
        ``picture(row) -> (h, w, 3) uint8 array or None`` (see ``thumbnails``).
    pictureLabel : str
        Heading of the picture column.
    sortBy : str, descending : bool
        Initial order (e.g. the chosen score, worst first).
    actions : list of (label, callable)
        Buttons under the table; ``callable(selectedRows)`` is called on click.
    onDoubleClick : callable, optional
        ``onDoubleClick(row)`` for a double-clicked row.
    header : str
        A line above the table (what it shows, how it is sorted).
    """

    def __init__(self, title, rows, columns, *, picture=None, pictureLabel="",
                 sortBy=None, descending=False, actions=(), onDoubleClick=None,
                 header="", pageSize=40, rowHeight=70, pictureWidth=230,
                 masterWindow=None):
        super().__init__(title, masterWindow=masterWindow, minsize=(700, 420))
        self.rows, self.columns = list(rows), list(columns)
        self.picture, self.pageSize, self.page = picture, pageSize, 0
        self.selectedIds, self.photos, self.pictures = set(), {}, {}
        self.message = ""
        self._onDoubleClick = onDoubleClick
        self._sort = (sortBy, descending)
        style = ttk.Style(self.root)
        style.configure("QcTable.Treeview", rowheight=rowHeight if picture else 22)
        self.headerLabel = tk.Label(self.root, text=header, anchor="w", justify="left")
        self.headerLabel.grid(row=0, column=0, sticky="ew", padx=5, pady=(5, 0))
        self._buildTree(pictureLabel, pictureWidth)
        self._buildButtons(actions)
        self.root.rowconfigure(0, weight=0)
        self.root.rowconfigure(1, weight=1)
        if sortBy:
            self.sortRows(sortBy, descending)
        else:
            self.showPage(0)

    # --------------------------- building ------------------------------------
    def _buildTree(self, pictureLabel, pictureWidth):
        frame = tk.Frame(self.root)
        frame.grid(row=1, column=0, sticky="news", padx=5, pady=5)
        frame.rowconfigure(0, weight=1)
        frame.columnconfigure(0, weight=1)
        keys = [c.key for c in self.columns]
        self.tree = ttk.Treeview(frame, columns=keys, style="QcTable.Treeview",
                                 show="tree headings" if self.picture else "headings",
                                 selectmode="extended", height=8)
        self.tree.heading("#0", text=pictureLabel)
        self.tree.column("#0", width=pictureWidth if self.picture else 0, stretch=False)
        for c in self.columns:
            self.tree.heading(c.key, text=c.label, command=lambda k=c.key: self._onHeading(k))
            width = max(c.width, 8 * len(c.label) + 26)  # room for the sort arrow
            self.tree.column(c.key, width=width, anchor=c.anchor, stretch=False)
        ys = ttk.Scrollbar(frame, orient="vertical", command=self.tree.yview)
        xs = ttk.Scrollbar(frame, orient="horizontal", command=self.tree.xview)
        self.tree.configure(yscrollcommand=ys.set, xscrollcommand=xs.set)
        self.tree.grid(row=0, column=0, sticky="news")
        ys.grid(row=0, column=1, sticky="ns")
        xs.grid(row=1, column=0, sticky="ew")
        self.tree.bind("<<TreeviewSelect>>", self._onSelect)
        self.tree.bind("<Double-1>", self._onDouble)

    def _buildButtons(self, actions):
        bar = tk.Frame(self.root)
        bar.grid(row=2, column=0, sticky="ew", padx=5, pady=(0, 5))
        self.prevButton = widgets.Button(bar, "< Previous", command=lambda: self.showPage(
            self.page - 1))
        self.nextButton = widgets.Button(bar, "Next >", command=lambda: self.showPage(
            self.page + 1))
        self.prevButton.grid(row=0, column=0, padx=2)
        self.nextButton.grid(row=0, column=1, padx=2)
        self.status = tk.Label(bar, anchor="w")
        self.status.grid(row=0, column=2, sticky="ew", padx=8)
        bar.columnconfigure(2, weight=1)
        self.actionButtons = {}
        for i, (label, callback) in enumerate(actions):
            btn = widgets.HotButton(bar, label, command=lambda c=callback: self._run(c))
            btn.grid(row=0, column=3 + i, padx=2)
            self.actionButtons[label] = btn

    def _run(self, action):
        """Call an action with the selected rows; its returned text goes in the status."""
        self.message = action(self.selectedRows()) or ""
        self._updateStatus()

    # --------------------------- content -------------------------------------
    def sortRows(self, key, descending):
        """Order every row by ``key`` (missing values last) and show the first page."""
        self._sort = (key, descending)
        self.rows.sort(key=_sortKey(key, descending))
        for c in self.columns:
            arrow = (" \u25bc" if descending else " \u25b2") if c.key == key else ""
            self.tree.heading(c.key, text=c.label + arrow)
        self.showPage(0)

    def _onHeading(self, key):
        current, descending = self._sort
        self.sortRows(key, not descending if key == current else True)

    def pageRows(self):
        start = self.page * self.pageSize
        return self.rows[start:start + self.pageSize]

    def showPage(self, page):
        """Fill the tree with page ``page`` (0-based, clamped)."""
        pages = max(1, math.ceil(len(self.rows) / self.pageSize))
        self.page = min(max(0, page), pages - 1)
        self.tree.delete(*self.tree.get_children())
        self.photos = {}
        for row in self.pageRows():
            iid = str(row["id"])
            values = [c.text(row.get(c.key)) for c in self.columns]
            kw = {}
            if self.picture is not None:
                photo = self._photo(row)
                if photo is not None:
                    kw["image"] = photo
            self.tree.insert("", "end", iid=iid, text="", values=values, **kw)
        keep = [str(i) for i in self.selectedIds if self.tree.exists(str(i))]
        self.tree.selection_set(keep)
        self.prevButton.config(state=tk.NORMAL if self.page > 0 else tk.DISABLED)
        self.nextButton.config(state=tk.NORMAL if self.page < pages - 1 else tk.DISABLED)
        self._updateStatus()

    def _photo(self, row):
        if row["id"] not in self.pictures:
            self.pictures[row["id"]] = self.picture(row)
        rgb = self.pictures[row["id"]]
        if rgb is None:
            return None
        photo = ImageTk.PhotoImage(Image.fromarray(rgb), master=self.root)
        self.photos[row["id"]] = photo  # Tk forgets images nobody references
        return photo

    def _updateStatus(self):
        n = len(self.rows)
        start = self.page * self.pageSize
        shown = f"rows {start + 1}-{min(n, start + self.pageSize)} of {n}" if n else "no rows"
        text = f"{shown};  {len(self.selectedIds)} selected"
        self.status.config(text=text + (f".  {self.message}" if self.message else ""))

    # --------------------------- selection -----------------------------------
    def _rowById(self, iid):
        return next((r for r in self.rows if str(r["id"]) == str(iid)), None)

    def _onSelect(self, _=None):
        onPage = {r["id"] for r in self.pageRows()}
        chosen = {r["id"] for r in map(self._rowById, self.tree.selection()) if r}
        self.selectedIds = (self.selectedIds - onPage) | chosen
        self._updateStatus()

    def selectedRows(self):
        return [r for r in self.rows if r["id"] in self.selectedIds]

    def selectIds(self, ids):
        """Select rows by id (as a click would) and refresh the page."""
        self.selectedIds = set(ids)
        self.showPage(self.page)

    def _onDouble(self, event):
        iid = self.tree.identify_row(event.y)
        row = self._rowById(iid) if iid else None
        if row is not None and self._onDoubleClick is not None:
            self._run(lambda _: self._onDoubleClick(row))
