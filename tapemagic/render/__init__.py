"""Renderers: each turns a TapeResult into a string or a widget, and never calls display()."""
