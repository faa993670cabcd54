"""The Avro schemas of schemas/ as package data (``streamer.schemas``); see README.md here."""
