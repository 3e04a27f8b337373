"""study_server: the Flask study server, its admin pages and the export (docs/study-server.md, docs/protocol.md, docs/admin.md)."""
