"""How a model is judged and reported (floor 3: imports learn/, data/ and floor 0; not search/
or tracking/).

`evaluation` (one model's metrics, details and figures), `collect` (every evaluation gathered
into DVC's metrics and plots), `content` (what the report says), `markdown` and `html` (the
two renderings), `figures` and `charts` (the drawings), `stats` (intervals and paired
differences) and `compare` (a base against the workspace, for pull requests).
"""
