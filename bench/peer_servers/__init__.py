"""Servers of ``feature_sum`` on the peers' own frameworks, one script per peer.

Each runs in the peer's own venv (see :mod:`bench.peers`) as ``python <script> PORT [VARIANT]``,
listens on ``127.0.0.1:PORT`` and answers ``{"output": <sum>}`` to ``{"input": [10 doubles]}``
POSTed to ``/sum/predict`` (Triton: its KServe v2 route and body).
"""
