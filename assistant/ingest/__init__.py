"""Getting support data in: importers from helpdesk exports and CSV (``importers``), personal-data
scrubbing (``scrub``)."""
