#!/usr/bin/env bash
# Fetch the fourteen Debian documentation packages whose nineteen PDFs back the
# data/qa/pdf/*.jsonl question sets, and extract them under DEST/x.
# Usage: scripts/fetch_pdfs.sh [DEST]   (default DEST=/tmp/pdfs)
# Idempotent: packages already downloaded / PDFs already extracted are kept.
# See data/qa/pdf/SOURCES.md for versions and licences.
set -euo pipefail

DEST="${1:-/tmp/pdfs}"
mkdir -p "$DEST"
cd "$DEST"

# package  version-the-questions-were-written-against  pdf-path-inside-package
PKGS=(
  "texlive-latex-base-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/hyperref/hyperref-doc.pdf"
  "debmake-doc 1.17-7 usr/share/doc/debmake-doc/debmake-doc.en.pdf"
  "gnuplot-doc 5.4.4+dfsg1-2 usr/share/doc/gnuplot/gnuplot.pdf"
  "asymptote-doc 2.85+ds-1 usr/share/doc/asymptote/asymptote.pdf"
  "bash-doc 5.2.15-2 usr/share/doc/bash/bashref.pdf"
  # the long PDFs of data/qa/pdf/long_chapters.jsonl (issue 29)
  "texlive-bibtex-extra 2022.20230122-4 usr/share/doc/texlive-doc/latex/biblatex/biblatex.pdf"
  "texlive-latex-recommended-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/memoir/memman.pdf"
  # the second fresh reporting pair (r_intro_doc.jsonl, zsh_doc.jsonl)
  "r-doc-pdf 4.2.2.20221110-2 usr/share/R/doc/manual/R-intro.pdf"
  "zsh-doc 5.9-4 usr/share/doc/zsh-common/zsh.pdf"
  # the third fresh reporting pair (octave_doc.jsonl, beamer_doc.jsonl)
  "octave-doc 7.3.0-2 usr/share/doc/octave/octave.pdf"
  "texlive-latex-recommended-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/beamer/beameruserguide.pdf"
  # the fourth fresh reporting pair, kept blind (lilypond_usage_doc.jsonl, metapost_doc.jsonl)
  "lilypond-doc-pdf 2.24.1-2 usr/share/doc/lilypond/html/Documentation/usage.pdf"
  "texlive-metapost-doc 2022.20230122-3 usr/share/doc/texlive-doc/metapost/base/mpman.pdf"
  # the fifth fresh reporting pair, kept blind (siunitx_doc.jsonl, listings_doc.jsonl)
  "texlive-science-doc 2022.20230122-4 usr/share/doc/texlive-doc/latex/siunitx/siunitx.pdf"
  "texlive-latex-recommended-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/listings/listings.pdf"
  # the sixth fresh reporting pair, kept blind (gutenprint_doc.jsonl, fontspec_doc.jsonl)
  "gutenprint-doc 5.3.4.20220624T01008808d602-1 usr/share/doc/gutenprint-doc/gutenprint-users-manual.pdf"
  "texlive-latex-recommended-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/fontspec/fontspec.pdf"
  # the seventh fresh reporting pair, kept blind (r_data_doc.jsonl, microtype_doc.jsonl)
  "r-doc-pdf 4.2.2.20221110-2 usr/share/R/doc/manual/R-data.pdf"
  "texlive-latex-recommended-doc 2022.20230122-3 usr/share/doc/texlive-doc/latex/microtype/microtype.pdf"
)

for entry in "${PKGS[@]}"; do
  read -r pkg ver pdf <<<"$entry"
  shopt -s nullglob
  debs=("${pkg}"_*.deb)
  shopt -u nullglob
  if [ "${#debs[@]}" -eq 0 ]; then
    # Prefer the exact version; fall back to whatever the archive offers.
    if ! apt-get download "${pkg}=${ver}"; then
      echo "warning: ${pkg}=${ver} not available, downloading current version" >&2
      apt-get download "${pkg}"
    fi
    debs=("${pkg}"_*.deb)
  fi
  deb="${debs[0]}"
  got="$(dpkg-deb -f "$deb" Version)"
  if [ "$got" != "$ver" ]; then
    echo "warning: $deb is version $got, questions were written against $ver (page indices may differ)" >&2
  fi
  if [ ! -f "x/$pdf" ]; then
    dpkg-deb -x "$deb" x
  fi
  echo "$pkg $got -> $DEST/x/$pdf"
done
