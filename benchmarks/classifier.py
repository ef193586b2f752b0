"""Track A's first runner, kept so old commands work: it runs ``benchmarks/track_a.py``.

    python benchmarks/classifier.py [track_a.py's options]

Track A (every registered strategy on ``digits`` and ``mnist5000``) lives in
``benchmarks/track_a.py``, which writes ``track_a.{md,json}``.
"""

from __future__ import annotations

from track_a import main

if __name__ == "__main__":
    main()
