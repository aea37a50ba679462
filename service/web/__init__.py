"""What a person opens in a browser: the try-it page (``ui/``) and the offline API docs,
with their security headers (``pages``)."""
