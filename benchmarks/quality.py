"""Quality of an effect on held-out faces: did it do its job, keep detail, match its teacher, stay stable?

The command line of facefx.bench.quality (its docstring, or --help, lists the measures and files):

    python benchmarks/quality.py --effect age --teacher artifacts/teachers/age/00000-128px-ngf32-b6
    python benchmarks/quality.py --effect age --student artifacts/students/age/00003-x --models models/age
"""

from facefx.bench.quality import main

if __name__ == "__main__":
    main()
