// The one parser of the IVF token (faiss_gmm/ivf_token.h): every option alone and
// in the combinations the factory documents, what is left to FAISS, and a clear
// error (naming the token and the description) for every kind of bad token,
// including the removed probe rankings' own message.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <tuple>

#include "faiss_gmm/ivf_token.h"

using namespace faiss_gmm;

namespace {

/// The message parse_ivf_description throws for description ("" when it does not).
std::string error_of(const std::string& description) {
    try {
        parse_ivf_description(description);
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
    return "";
}

void expect_error(const std::string& description, const std::string& part) {
    const std::string e = error_of(description);
    EXPECT_NE(e.find(part), std::string::npos) << description << " -> \"" << e << "\", expected \"" << part << "\"";
    EXPECT_NE(e.find(description), std::string::npos) << "the message does not name the description: " << e;
}

/// (rule, λ, budget, tau, epsilon, max_copies, primary_by_posterior) a description asks for.
std::tuple<int, double, double, double, double, int, bool> spill_settings(const std::string& description) {
    const SpillParams s = parse_ivf_description(description).options.spill_params;
    return std::make_tuple(int(s.rule), s.soar_lambda, s.budget, s.tau, s.epsilon, s.max_copies,
                           s.primary_by_posterior);
}

} // namespace

TEST(IvfToken, CovarianceTokens) {
    IvfDescription p = parse_ivf_description("OPQ16_64,IVF1024_GMM,PQ16");
    EXPECT_TRUE(p.found);
    EXPECT_EQ(p.faiss_description, "OPQ16_64,IVF1024,PQ16");
    EXPECT_EQ(p.nlist, 1024);
    EXPECT_EQ(p.token, "IVF1024_GMM");
    EXPECT_EQ(p.option_items, std::vector<std::string>{"GMM"});
    EXPECT_TRUE(p.options.gmm);
    EXPECT_EQ(p.options.covariance_type, CovarianceType::Spherical);
    EXPECT_FALSE(p.options.spill);
    EXPECT_EQ(p.faiss_ivf_token, "");

    p = parse_ivf_description("IVF256_GMMdiag,PQ16x4fsr");
    EXPECT_EQ(p.faiss_description, "IVF256,PQ16x4fsr");
    EXPECT_EQ(p.options.covariance_type, CovarianceType::Diagonal);
    EXPECT_FALSE(p.options.spill);
}

// With no rule named, _spill<B> gives the rule the debsift1m study recommends for the quantizer (issue 14,
// fourth pass): GMM-SOAR at λ 0.5 for a spherical or diagonal GMM (the settings of _gsoar0.5), SOAR for a
// full-covariance one (GMM-SOAR cannot use its covariances), the distance ratio for k-means. The posterior
// ratio, the GMM default before, is _post.
TEST(IvfToken, SpillBudgetPicksTheRuleFromTheQuantizer) {
    IvfDescription p = parse_ivf_description("IVF64_GMM_spill1.2,Flat");
    EXPECT_TRUE(p.options.spill);
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::GmmSoar);
    EXPECT_DOUBLE_EQ(p.options.spill_params.soar_lambda, 0.5);
    EXPECT_DOUBLE_EQ(p.options.spill_params.budget, 1.2);
    EXPECT_EQ(p.options.spill_params.max_copies, 2);
    EXPECT_EQ(spill_settings("IVF64_GMM_spill1.5,Flat"), spill_settings("IVF64_GMM_gsoar0.5_spill1.5,Flat"));
    EXPECT_EQ(spill_settings("IVF64_GMM_spill1.5_ppost,Flat"),
              spill_settings("IVF64_GMM_gsoar0.5_ppost_spill1.5,Flat"));
    EXPECT_EQ(spill_settings("IVF64_GMMdiag_spill1.3,Flat"), spill_settings("IVF64_GMMdiag_gsoar0.5_spill1.3,Flat"));
    EXPECT_EQ(spill_settings("IVF64_GMMfull_spill1.3,Flat"), spill_settings("IVF64_GMMfull_soar_spill1.3,Flat"));
    EXPECT_EQ(parse_ivf_description("IVF64_GMMfull_spill1.3,Flat").options.spill_params.rule, SpillRule::Soar);
    p = parse_ivf_description("IVF64_GMM_post_spill1.2,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::Posterior); // the posterior ratio by name
    EXPECT_DOUBLE_EQ(p.options.spill_params.budget, 1.2);
    EXPECT_EQ(spill_settings("IVF64_GMMdiag_post_tau0.05,Flat"), spill_settings("IVF64_GMMdiag_tau0.05,Flat"));
    p = parse_ivf_description("IVF64_spill1.2,PQ16x4");
    EXPECT_FALSE(p.options.gmm);
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::DistanceRatio); // k-means: distance ratio
    EXPECT_EQ(p.faiss_description, "IVF64,PQ16x4");
    p = parse_ivf_description("IVF64_GMM_spill2.5,Flat");
    EXPECT_EQ(p.options.spill_params.max_copies, 3); // ⌈B⌉ when B > 2
    p = parse_ivf_description("IVF64_GMM_spill2.5_max5,Flat");
    EXPECT_EQ(p.options.spill_params.max_copies, 5);
}

TEST(IvfToken, FixedThresholdRules) {
    IvfDescription p = parse_ivf_description("IVF64_GMMdiag_tau0.05_max3,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::Posterior);
    EXPECT_DOUBLE_EQ(p.options.spill_params.tau, 0.05);
    EXPECT_EQ(p.options.spill_params.max_copies, 3);
    EXPECT_DOUBLE_EQ(p.options.spill_params.budget, 0);
    p = parse_ivf_description("IVF64_eps0.3,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::DistanceRatio);
    EXPECT_DOUBLE_EQ(p.options.spill_params.epsilon, 0.3);
    p = parse_ivf_description("IVF64_GMM_ratio_spill1.5,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::DistanceRatio); // _ratio even with GMM
}

TEST(IvfToken, SoarAndResponsibilityRules) {
    IvfDescription p = parse_ivf_description("IVF64_GMM_soar_spill1.5,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::Soar);
    EXPECT_DOUBLE_EQ(p.options.spill_params.soar_lambda, 1);
    EXPECT_EQ(p.option_items, (std::vector<std::string>{"GMM", "soar", "spill1.5"}));
    p = parse_ivf_description("IVF64_soar2_eps0.2,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::Soar);
    EXPECT_DOUBLE_EQ(p.options.spill_params.soar_lambda, 2);
    EXPECT_DOUBLE_EQ(p.options.spill_params.epsilon, 0.2);
    p = parse_ivf_description("IVF64_GMM_resp,Flat");
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::Responsibility);
    EXPECT_DOUBLE_EQ(p.options.spill_params.tau, 1.0 / 64); // the research's 1/K
    EXPECT_EQ(p.options.spill_params.max_copies, 8);
    p = parse_ivf_description("IVF64_GMM_resp0.2_max3,Flat");
    EXPECT_DOUBLE_EQ(p.options.spill_params.tau, 0.2);
    EXPECT_EQ(p.options.spill_params.max_copies, 3);
    p = parse_ivf_description("IVF64_GMM_resp_spill1.5,Flat");
    EXPECT_DOUBLE_EQ(p.options.spill_params.budget, 1.5);
}

// _gsoar (issue 14): SOAR's amended distance inside the GMM's −2 log-density gap (SpillRule::GmmSoar).
TEST(IvfToken, GmmSoarRule) {
    // λ defaults to 0.5 (the held-out choice; _soar's stays 1), _eps is the rule's fixed threshold, _ppost combines.
    const int gsoar = int(SpillRule::GmmSoar);
    const double tau = SpillParams().tau, eps = SpillParams().epsilon;
    EXPECT_EQ(spill_settings("IVF64_GMM_gsoar_spill1.5,Flat"), std::make_tuple(gsoar, 0.5, 1.5, tau, eps, 2, false));
    EXPECT_EQ(spill_settings("IVF64_GMM_gsoar1_spill1.5,Flat"), std::make_tuple(gsoar, 1.0, 1.5, tau, eps, 2, false));
    EXPECT_EQ(parse_ivf_description("IVF64_GMM_soar_spill1.5,Flat").options.spill_params.soar_lambda, 1.0);
    EXPECT_EQ(spill_settings("IVF64_GMMdiag_gsoar0.5_eps3_ppost,Flat"),
              std::make_tuple(gsoar, 0.5, 0.0, tau, 3.0, 2, true));
    expect_error("IVF64_gsoar_spill1.5,Flat", "need _GMM, _GMMdiag or _GMMfull");
    expect_error("IVF64_GMMfull_gsoar_spill1.5,Flat", "_gsoar needs spherical or diagonal variances");
    expect_error("IVF64_GMM_soar_gsoar_spill1.5,Flat", "choose different rules");
    expect_error("IVF64_GMM_gsoar_ratio_spill1.5,Flat", "choose different rules");
    expect_error("IVF64_GMM_gsoar_tau0.1,Flat", "choose different rules");
    expect_error("IVF64_GMM_gsoar,Flat", "needs _spill<B>, _tau<t> or _eps<e>");
}

TEST(IvfToken, PosteriorPrimaryAlone) {
    const IvfDescription p = parse_ivf_description("IVF64_GMM_ppost,Flat");
    EXPECT_TRUE(p.options.spill);
    EXPECT_TRUE(p.options.spill_params.primary_by_posterior);
    EXPECT_EQ(p.options.spill_params.rule, SpillRule::None); // one list per vector
}

TEST(IvfToken, WhatIsLeftToFaiss) {
    for (const char* d : {"IVF64,Flat", "PCA32,IVF128,Flat", "HNSW32", "Flat", ""}) {
        const IvfDescription p = parse_ivf_description(d);
        EXPECT_FALSE(p.found) << d;
        EXPECT_EQ(p.faiss_description, d);
        EXPECT_EQ(p.faiss_ivf_token, "") << d;
    }
    EXPECT_EQ(parse_ivf_description("PCA32,IVF128,Flat").nlist, 128);
    EXPECT_EQ(parse_ivf_description("HNSW32").nlist, 0);
    const IvfDescription h = parse_ivf_description("IVF64_HNSW32,Flat"); // FAISS's own IVF token
    EXPECT_FALSE(h.found);
    EXPECT_EQ(h.faiss_ivf_token, "IVF64_HNSW32");
    EXPECT_EQ(h.nlist, 64);
    EXPECT_EQ(parse_ivf_description("IVF16_GMMtied,Flat").faiss_ivf_token, "IVF16_GMMtied"); // not ours
    const IvfDescription full = parse_ivf_description("IVF16_GMMfull,Flat"); // issue 17
    EXPECT_TRUE(full.found && full.options.gmm);
    EXPECT_EQ(full.options.covariance_type, CovarianceType::Full);
    EXPECT_EQ(full.faiss_description, "IVF16,Flat");
}

TEST(IvfToken, BadValuesAreNamed) {
    for (const char* d : {"IVF64_GMM_spill1.2.3,Flat", "IVF64_GMM2,Flat", "IVF64_GMM_ratio1_spill1.2,Flat",
                          "IVF64_GMM_ppost1,Flat", "IVF64_GMM_post1_spill1.2,Flat", "IVF64_GMM_resp2,Flat",
                          "IVF64_GMM_resp0,Flat",
                          "IVF64_GMM_spill1.2_max0,Flat", "IVF64_GMM_spill1.2_max65,Flat",
                          "IVF64_GMM_spill1.2_max1.5,Flat", "IVF64_GMM_tau,Flat", "IVF64_eps,Flat"}) {
        expect_error(d, "bad value in option");
    }
}

TEST(IvfToken, MalformedTokensAreRefused) {
    expect_error("IVF64_GMM_foo,Flat", "cannot parse \"IVF64_GMM_foo\"");
    expect_error("IVF64_GMM_spillx,Flat", "cannot parse \"IVF64_GMM_spillx\""); // not a number: not an option
    expect_error("IVF_GMM,Flat", "cannot parse \"IVF_GMM\"");
    expect_error("IVFx_GMM,Flat", "(expected IVF<nlist>_GMM, IVF<nlist>_GMMdiag or IVF<nlist>_GMMfull)");
    expect_error("IVF16_GMM,IVF8_GMM,Flat", "more than one IVF<n>_... token");
}

TEST(IvfToken, ContradictionsAreRefused) {
    for (const char* d : {"IVF64_GMM_soar_tau0.1,Flat", "IVF64_GMM_ratio_tau0.1,Flat", "IVF64_GMM_resp_soar_spill1.2,Flat",
                          "IVF64_GMM_resp_ratio_spill1.2,Flat", "IVF64_soar_ratio_spill1.2,Flat",
                          "IVF64_GMM_post_gsoar_spill1.2,Flat", "IVF64_GMM_post_ratio_spill1.2,Flat",
                          "IVF64_GMM_post_eps0.2,Flat", "IVF64_GMM_post_resp_spill1.2,Flat"}) {
        expect_error(d, "choose different rules");
    }
    expect_error("IVF64_GMM_spill1.2_tau0.1,Flat", "are exclusive");
    expect_error("IVF64_GMM_resp0.1_spill1.2,Flat", "are exclusive");
    expect_error("IVF64_GMM_soar,Flat", "needs _spill<B>, _tau<t> or _eps<e>");
    expect_error("IVF64_GMM_ratio,Flat", "needs _spill<B>, _tau<t> or _eps<e>");
    expect_error("IVF64_GMM_post,Flat", "needs _spill<B>, _tau<t> or _eps<e>");
    for (const char* d :
         {"IVF64_tau0.1,Flat", "IVF64_resp,Flat", "IVF64_ppost_spill1.2,Flat", "IVF64_post_spill1.2,Flat"}) {
        expect_error(d, "need _GMM, _GMMdiag or _GMMfull");
    }
}

TEST(IvfToken, RemovedProbeRankingsKeepTheirMessage) {
    for (const char* o : {"probepost", "pscale2", "ppow0.25"}) {
        const std::string d = std::string("IVF64_GMM_soar_spill1.5_") + o + ",Flat";
        const std::string e = error_of(d);
        EXPECT_NE(e.find(std::string("option \"") + o + "\" was removed"), std::string::npos) << e;
        EXPECT_NE(e.find("lists are probed by L2"), std::string::npos) << e;
    }
    EXPECT_NE(error_of("IVF64_probepost,Flat").find("was removed"), std::string::npos);
    // The posterior rule's temperature (issue 14): _tau<t^T> says the same.
    for (const char* d : {"IVF64_GMMdiag_tau0.05_T4_max3,Flat", "IVF64_GMM_spill1.2_T2,Flat", "IVF64_GMM_T_spill1.2,Flat"}) {
        const std::string e = error_of(d);
        EXPECT_NE(e.find("was removed"), std::string::npos) << e;
        EXPECT_NE(e.find("_tau<t^T>"), std::string::npos) << e;
    }
}

TEST(IvfToken, OlderEntryPointsAgree) {
    std::string fd = "untouched";
    IvfOptions o;
    EXPECT_FALSE(parse_ivf_options("IVF64,Flat", &fd, &o));
    EXPECT_EQ(fd, "untouched");
    ASSERT_TRUE(parse_ivf_options("IVF64_GMM_soar_spill1.5,Flat", &fd, &o));
    EXPECT_EQ(fd, "IVF64,Flat");
    EXPECT_EQ(o.spill_params.rule, SpillRule::Soar);
    CovarianceType t = CovarianceType::Spherical;
    EXPECT_FALSE(parse_gmm_description("IVF64_spill1.2,Flat", &fd, &t)); // spill without GMM
    ASSERT_TRUE(parse_gmm_description("IVF64_GMMdiag_spill1.2,Flat", &fd, &t));
    EXPECT_EQ(fd, "IVF64,Flat"); // spill options stripped too
    EXPECT_EQ(t, CovarianceType::Diagonal);
}

TEST(IvfToken, WithIvfOptionsReplacesOurOptions) {
    EXPECT_EQ(with_ivf_options("IVF256,Flat", "GMM"), "IVF256_GMM,Flat");
    EXPECT_EQ(with_ivf_options("OPQ16_64,IVF1024,PQ16", "GMMdiag_spill1.2"), "OPQ16_64,IVF1024_GMMdiag_spill1.2,PQ16");
    EXPECT_EQ(with_ivf_options("IVF64_GMM_spill1.5,SQ8", "soar_spill1.2"), "IVF64_soar_spill1.2,SQ8");
    EXPECT_EQ(with_ivf_options("IVF64_GMM,SQ8", ""), "IVF64,SQ8");
    EXPECT_THROW(with_ivf_options("HNSW32", "GMM"), std::invalid_argument);
    EXPECT_THROW(with_ivf_options("IVF64,Flat", "GMM_foo"), std::invalid_argument); // checked by the parser
}
