# lme4 engine of maco-study's analysis (analysis/models.py runs it).
# Usage: Rscript --vanilla glmer.R DATA.csv MODELS.tsv OUT.csv
#   DATA.csv   y (0/1), participant, unit, x1..xk (the fixed-effect design)
#   MODELS.tsv name <TAB> formula <TAB> 1 to write the fixed-effect vcov, else 0
#   OUT.csv    long table: model, kind, name, name2, value
# Binomial logit glmer, Laplace (nAGQ = 1), lme4's default optimizer and vcov.
suppressPackageStartupMessages(library(lme4))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 3) stop("usage: glmer.R DATA.csv MODELS.tsv OUT.csv")
d <- read.csv(args[1], stringsAsFactors = FALSE)
d$participant <- factor(d$participant)
d$unit <- factor(d$unit)
models <- read.delim(args[2], header = FALSE, stringsAsFactors = FALSE,
                     col.names = c("name", "formula", "vcov"))

rows <- list()
add <- function(model, kind, name, value, name2 = "") {
  rows[[length(rows) + 1]] <<- data.frame(model = model, kind = kind, name = name,
                                          name2 = name2, value = value)
}
num <- function(x) sprintf("%.17g", x)

for (i in seq_len(nrow(models))) {
  model <- models$name[i]
  notes <- character(0)
  keep <- function(cond) notes <<- c(notes, conditionMessage(cond))
  fit <- withCallingHandlers(
    {
      m <- glmer(as.formula(models$formula[i]), data = d, family = binomial, nAGQ = 1)
      v <- if (models$vcov[i] == 1) as.matrix(vcov(m)) else NULL
      m
    },
    warning = function(w) { keep(w); invokeRestart("muffleWarning") },
    message = function(msg) { keep(msg); invokeRestart("muffleMessage") }
  )
  b <- fixef(fit)
  add(model, "fixef", names(b), num(b))
  if (!is.null(v)) {
    for (j in seq_len(ncol(v))) add(model, "vcov", rownames(v), num(v[, j]), colnames(v)[j])
  }
  vc <- as.data.frame(VarCorr(fit))
  add(model, "re_sd", vc$grp, num(vc$sdcor))
  ll <- logLik(fit)
  add(model, "loglik", "loglik", num(as.numeric(ll)))
  add(model, "npar", "npar", as.character(attr(ll, "df")))
  conv <- fit@optinfo$conv
  failed <- conv$opt != 0 || length(conv$lme4$code) > 0 && any(conv$lme4$code != 0) ||
    any(grepl("failed to converge|unable to evaluate|degenerate", notes))
  add(model, "converged", "converged", if (failed) "FALSE" else "TRUE")
  add(model, "singular", "singular", if (isSingular(fit)) "TRUE" else "FALSE")
  notes <- unique(trimws(c(notes, conv$lme4$messages)))
  if (length(notes)) add(model, "message", "message", gsub("[\r\n]+", " ", notes))
}
add(".", "version", "R", paste(R.version$major, R.version$minor, sep = "."))
add(".", "version", "lme4", as.character(packageVersion("lme4")))
write.csv(do.call(rbind, rows), args[3], row.names = FALSE)
