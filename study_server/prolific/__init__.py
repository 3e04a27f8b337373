"""`maco-study prolific`: the study created, watched and paid on Prolific from the command line.

- `api.py`: Prolific's REST API (v1) with the token from PROLIFIC_TOKEN: retries, rate limits,
  pagination; the token never leaves the Authorization header.
- `draft.py`: the draft study's body from the server's configuration and the study database.
- `records.py`: each participant's outcome as the server stored it (the code it was given, the
  evidence a researcher reviews).
- `matching.py`: Prolific's submissions matched to those records, and what to do with each.
- `cli.py`: `create`, `status`, `reconcile`.

docs/prolific.md is the recipe, from a draft study to paid participants.
"""
