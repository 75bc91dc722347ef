from leadscore.cli.main import app

app()
