"""stimuli: see DESIGN.md."""
