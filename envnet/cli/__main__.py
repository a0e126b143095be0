from envnet.cli import app

app()
