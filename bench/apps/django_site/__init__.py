"""A minimal Django project for bench/run.sh SUITE=django (see settings.py)."""
