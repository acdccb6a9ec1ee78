"""Public datasets: a registry (:mod:`.registry`), a resumable checksummed downloader
(:mod:`.download`), archive unpacking (:mod:`.archive`), one converter per format (:mod:`.arcade`,
:mod:`.dca1`, :mod:`.xcad`, :mod:`.drive`, dispatched by :mod:`.convert`) and ``fetch``
(:mod:`.fetch`), which chains them. The CLI lives in :mod:`.cli` (``angioseg data ...``).
"""
