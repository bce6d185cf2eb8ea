"""The local view of the runs: ``ml-manager ui`` (a web page served on this machine) and ``ml-manager report``
(the same page as one self-contained HTML file).

``data`` turns runs into what the page draws (the runs table, downsampled history); ``server`` serves it
(starlette on uvicorn, GET only, loopback by default); ``report`` inlines it.  The page itself is
``static/index.html`` with ``app.js`` and ``app.css``; the charts are uPlot (MIT, vendored from the npm
registry's ``uplot`` package, version in ``static/uPlot.VERSION``), never fetched from a network.
"""
