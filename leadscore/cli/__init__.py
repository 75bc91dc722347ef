"""The `leadscore` command line. `leadscore.cli.main` builds the app (the console script is
`leadscore.cli.main:app`); one module per command group; `leadscore.cli.common` holds what they share."""
