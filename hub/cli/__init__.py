"""`hashfed`: the operator's command line. `hub.cli.main` is the one click group; each subcommand module
imports only `hub.cli.context`, never the group."""
