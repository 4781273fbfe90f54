# gunicorn for the web-infra app: threads, because requests mostly wait on MySQL.
bind = "unix:/run/web-app/gunicorn.sock"
workers = 2
worker_class = "gthread"
threads = 8
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = "-"
errorlog = "-"
