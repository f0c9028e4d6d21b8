"""The code behind ``manage.py``, kept apart from the application modules."""
