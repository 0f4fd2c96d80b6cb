"""The reference survivor intake an intake organisation runs (`hashfed-intake serve`).

A person selects images on their own device; the page hashes them there (PDQ in static/pdq.js, SHA-256 by
WebCrypto, MD5 of videos) and sends only the hashes. The intake submits them to the hub as one case and gives
the person a case number and a PIN, which it keeps only as an argon2 hash. Partner-side software: it talks to
the hub over HTTP with the kit's client code and never imports the hub.
"""
