"""Packaging for hingeabl-nb: every field comes from settings.ini (nbdev 2)."""

from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

statuses = [
    "Planning",
    "Pre-Alpha",
    "Alpha",
    "Beta",
    "Production/Stable",
    "Mature",
    "Inactive",
]
py_versions = "3.10 3.11 3.12 3.13".split()
min_python = cfg["min_python"]
supported_pythons = py_versions[py_versions.index(min_python) :]

requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
# `book`: build the course site and read it in a browser (make book, make check-site);
# `jupyter`: JupyterLab (make jupyter); `student`: what a student needs to work through
# the student edition and check it (JupyterLab, widgets, what the check cells import).
extras = {
    "dev": dev_requirements,
    "book": cfg.get("book_requirements", "").split(),
    "jupyter": cfg.get("jupyter_requirements", "").split(),
    "student": cfg.get("student_requirements", "").split(),
}
console_scripts = [
    s.strip() for s in cfg.get("console_scripts", "").splitlines() if s.strip()
]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    license="Apache-2.0",  # SPDX expression (PEP 639); no deprecated license classifier
    classifiers=[
        f"Development Status :: {cfg['status']} - {statuses[int(cfg['status']) - 1]}",
        "Intended Audience :: " + cfg["audience"].title(),
        "Natural Language :: " + cfg["language"].title(),
    ]
    + [f"Programming Language :: Python :: {v}" for v in supported_pythons],
    url=cfg["git_url"],
    # assets/ are data folders, not packages: find_namespace_packages lists them so
    # setuptools installs their files quietly (no "absent from the packages
    # configuration" warning).
    packages=setuptools.find_namespace_packages(
        include=["hingeabl_nb", "hingeabl_nb.*"], exclude=["*.__pycache__"]
    ),
    package_data={"hingeabl_nb": ["assets/**/*"]},
    include_package_data=True,
    install_requires=requirements,
    extras_require=extras,
    python_requires=">=" + min_python,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    zip_safe=False,
    entry_points={
        "console_scripts": console_scripts,
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    author=cfg["author"],
    author_email=cfg["author_email"],
    description=cfg["description"],
    keywords=cfg["keywords"],
)
