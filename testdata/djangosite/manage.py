#!/usr/bin/env python
"""Django's command-line utility for krait's browser-test site.

    DJANGOSITE_DATA_DIR=/tmp/site DJANGOSITE_STATIC_ROOT=/tmp/site/static \
        python manage.py migrate
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "krsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
