"""WSGI entry point:

    krait serve krsite.wsgi:application --chdir testdata/djangosite \
        --certfile cert.pem --keyfile key.pem --static /static=$DJANGOSITE_STATIC_ROOT
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "krsite.settings")

application = get_wsgi_application()
