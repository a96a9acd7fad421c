"""The `medres` command: one module per subcommand, each owning its flags (`register`) and its
work (`run`); `main` routes and reports errors. Modules import heavy libraries inside `run`, so
`medres --help` and the light commands start fast."""
