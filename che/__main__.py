from che.cli import main

main()
