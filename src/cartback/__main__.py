from cartback.cli import app

app()
