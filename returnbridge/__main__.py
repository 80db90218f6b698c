from returnbridge.cli import app

app()
