# gunicorn for the web-infra app: threads, because requests mostly wait on MySQL.
bind = "unix:/run/web-app/gunicorn.sock"
workers = 2  # settings.web_tier.GUNICORN_WORKERS: counted in the database's connection budget
worker_class = "gthread"
# Above twice the app's max_concurrent_queries (one per database): /health finds a thread.
threads = 12
timeout = 30
graceful_timeout = 10
# Above Nginx's upstream keepalive_timeout (60 s): Nginx closes idle connections first.
keepalive = 75
accesslog = "-"
errorlog = "-"
