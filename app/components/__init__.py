"""One module per part of the page; each has ``render(ui)`` (build its widgets) and ``listen(ui)`` (wire events)."""
