"""analysis: see DESIGN.md."""
