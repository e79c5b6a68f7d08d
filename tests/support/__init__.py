"""Helpers shared by the test folders: one copy each (tests import `support.<module>`)."""
