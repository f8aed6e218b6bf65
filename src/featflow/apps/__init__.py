"""Applications built on the library: streaming inference over a video (``infer``), the demo (``demo``) and the
self-contained HTML page of a run folder (``html``). They sit above ``engine`` and ``analysis`` and below the API
and the command line."""
