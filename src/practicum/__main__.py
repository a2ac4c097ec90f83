from practicum.cli import main

raise SystemExit(main())
