"""study_server: see DESIGN.md."""
