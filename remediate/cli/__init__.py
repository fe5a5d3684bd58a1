"""The command line: click commands (main), JSON Lines and human output (render, output), the console script."""
