"""The task functions the worker runs, one module per capability.

Tasks are thin: they find the process's Flask app (`app.queue.flask_app()`) and call
domain code in `app/`, which a CLI command or a test calls just the same. They register
on the procrastinate App in `app/queue.py`, which lists these modules for the worker to
load; task names are declared there too (they are stored in queued jobs and never
change). Nothing under `app/` imports this package.
"""
