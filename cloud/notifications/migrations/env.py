from cloud.platform.migration_env import run_migrations

run_migrations()
